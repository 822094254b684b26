"""Qt user interface: main window, docks, workers and the undo stack."""
