"""Packaged resources: report templates, the Harvard-Oxford label table."""
