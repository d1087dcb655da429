"""lit_i2v: image-to-video transfer learning of image-language foundation models, with PyTorch Lightning."""

__version__ = "0.1.0"
