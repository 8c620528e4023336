"""Online feature stores: ``memory://`` (in-process) and ``redis://`` behind one protocol."""
