"""What the abuse desk reads: text, JSON and HTML reports."""
