"""PyTorch autoencoders (dense, linear, conv, lstm, denoising, vae), trained and exported to ONNX,
and the network of a score's rotation term.

`config` holds the hyper-parameters, `models` the networks, `trainer` the loop, `estimator` the
scikit-learn style wrapper (`AutoencoderEstimator`), `export` the ONNX / picture writers, `onnx_io`
the export to ONNX and its parity bound, `turns` the rotation term's loop and export, and `fit` the
network kinds of `training.fit`.
"""
