"""The media types the service reads and writes."""

JSON = "application/json"
NPY = "application/x-npy"
CSV = "text/csv"
NPZ = "application/x-npz"
PNG = "image/png"
MULTIPART = "multipart/form-data"
