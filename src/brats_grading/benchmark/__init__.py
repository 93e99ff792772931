"""The whole-pipeline benchmark behind ``scripts/benchmark.py``: every measurement in a fresh child process.

``child`` holds what a child measures (a training step, a bundle run, a bare loop, preprocessing,
inference, a matmul peak); ``runner`` starts children interleaved and summarises their timings;
``sections`` builds the five tables; ``report`` writes them as markdown and JSON.
"""
