"""fabricdata: the data-centric loop around Florence-2 for fabric-defect detection."""

__version__ = "0.1.0"
