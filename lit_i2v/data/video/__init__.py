"""Frames from video files: decoders (decord, PyAV, torchcodec; upright, damage detected), JPEG frames, which frames
make a clip (samplers), and uint8 crops and resizes (transforms)."""
