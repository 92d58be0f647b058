// Python binding of the dmd_ops extension, built on first use by torch_utils/custom_ops.py.

#include <torch/extension.h>

#include "dmd_ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act_cuda, "Bias, activation (or its derivatives), gain and clamp");
    m.def("upfirdn2d", &upfirdn2d_cuda, "Upsample, pad, FIR-filter and downsample 2D images");
}
