"""Datasets: discovery, reading and type mapping for Parquet, HDF5, CSV and in-memory frames.

Format modules implement the source protocol described in :mod:`hpcframe.io.dataset`.
"""
