"""Shared model pieces: CLIP loading, text encoder, prompt assembly, precision."""
