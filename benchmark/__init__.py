"""The performance benchmark of the model servers (`make bench` = `python -m benchmark`). See README.md."""
