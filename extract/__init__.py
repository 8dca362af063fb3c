"""extract package."""
