"""A MONAI Deploy application that grades one case with an exported bundle (needs the ``deploy`` extra)."""
