"""rectify."""
