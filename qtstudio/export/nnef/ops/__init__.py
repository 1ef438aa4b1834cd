"""NNEF translations, one module per op family (each a mixin of the converter).

- ``activations``: gelu, silu, leaky_relu, hardtanh, clamp, softplus, where, masked_fill
- ``reductions``: mean, sum, amax, amin, softmax, log_softmax
- ``norms``: layer_norm, rms_norm, batch_norm (inference form)
- ``linalg``: linear, matmul / mm / bmm, addmm, embedding, convolutions
- ``layout``: transpose, permute, expand, repeat, slice, narrow, select, cat, stack, split,
  unbind, gather, cumsum
- ``attention``: scaled_dot_product_attention (causal or given masks, grouped key/value heads)
- ``pooling``: adaptive and fixed-window average and max pooling

The converter's own plumbing (operands, constants, weights, dispatch, casts) stays in
``qtstudio/export/nnef/convert.py``; an op is added as ``_op_<aten name>`` in its family.
"""
