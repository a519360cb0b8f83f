"""Triton kernels. Imported only when a Triton backend first runs, so that importing pyface
does not import triton (TRITON_INTERPRET must be set before triton is imported)."""
