"""Qt/VTK views of a case: three slice views and a 3D scene (no pipeline logic)."""
