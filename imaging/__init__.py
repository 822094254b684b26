"""Imaging: scan I/O, segmentation, fusion and meshing. No Qt here."""
