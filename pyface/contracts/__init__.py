"""The bottom layer of pyface: the contracts its other layers share, importing nothing of
pyface. ops, reference, nn, data and models read them from here, so that no layer has to
import another at its own level or above it for a table or a check:

- checks: the argument checks every op makes (shared helpers and one function per op);
- grid: the coordinate convention of the keypoint ops (the identity grid);
- faces: the face-parsing label table, the landmark layout and the models' input sizes;
- mouth: the key motion templates of the mouth that pick a speaker's style references.

The import order of the package, top to bottom: cli -> train / bench / demo -> evaluate ->
pipelines -> recipes -> data, models, opinfo, optimization (not each other) -> nn -> ops ->
backends (reference, triton_kernels, the compiled _C) and distributed -> contracts and the other
helpers that import no layer (geometry, metrics, audio, run_log). tests/test_layers.py holds the table and checks every import."""
