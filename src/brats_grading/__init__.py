"""Repository-side tools for the BraTS grading bundles: synthetic data, datalists, shared components."""
