"""Reading raw dumps (one module per format) and writing outputs atomically."""
