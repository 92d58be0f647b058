// Declarations shared by the CUDA sources and the Python binding of the dmd_ops extension.
// The op modules check shapes, dtypes and devices before they call these functions. The
// functions repeat the checks whose failure would read out of bounds.

#pragma once

#include <ATen/ATen.h>

// Activation codes, in the order of ACTIVATIONS in torch_utils/custom_ops.py.
enum DmdActivation : int {
    kLinear = 0,
    kRelu = 1,
    kLrelu = 2,
    kTanh = 3,
    kSigmoid = 4,
    kElu = 5,
    kSelu = 6,
    kSoftplus = 7,
    kSwish = 8,
};

// Elementwise bias, activation, gain and clamp along dimension `dim` of a contiguous `x`.
// order 0 returns clamp(act(x + b) * gain). order 1 and 2 return dy * gain * act'(x + b) and
// dy * gain * act''(x + b), set to 0 where the clamp cut the forward value. An empty `b`
// means no bias and an empty `dy` is only allowed for order 0. clamp < 0 disables clamping.
at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy,
                         int64_t order, int64_t act, double alpha, double gain, double clamp,
                         int64_t dim);

// Upsample by zero insertion, pad (negative values crop), filter with the 2D correlation
// taps `f` [fh, fw] and keep every down-th sample, for images x [N, C, H, W]. The caller
// flips `f` for a true convolution and passes it in float32, or float64 for float64 images.
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                          int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                          int64_t pady0, int64_t pady1, double gain);
