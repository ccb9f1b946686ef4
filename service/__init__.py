"""latentserve: serve encoders and decoders over REST, score anomalies by reconstruction error."""
