"""weightsym: neural networks whose weights obey symmetries."""
__version__ = "0.1.0"
