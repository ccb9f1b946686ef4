"""PyTorch autoencoders (dense, linear, conv, lstm, denoising, vae), trained and exported to ONNX.

`config` holds the hyper-parameters, `models` the networks, `trainer` the loop, `estimator` the
scikit-learn style wrapper (`AutoencoderEstimator`), `export` the ONNX / picture writers and `fit`
the network kinds of `training.fit`.
"""
