// CUDA kernel of bias_act: bias, activation, gain and clamp in one elementwise pass, plus the
// first and second derivatives that the autograd functions in bias_act.py use for backward
// and double backward.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dmd_ops.h"

namespace {

// Scale and alpha of SELU (Klambauer et al. 2017), as in torch.nn.functional.selu.
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

// Above this input, softplus returns its input, as torch.nn.functional.softplus does with
// its default threshold of 20.
constexpr double kSoftplusThreshold = 20.0;

// Derivative number `order` (0, 1 or 2) of activation `act` at z. The derivatives at the
// kinks of relu and lrelu follow PyTorch's backward: 0 and alpha at z == 0.
template <typename T>
__device__ T activation(int act, int order, T z, T alpha) {
    const T one = T(1);
    switch (act) {
        case kRelu:
            if (order == 0) return z > T(0) ? z : T(0);
            return order == 1 && z > T(0) ? one : T(0);
        case kLrelu:
            if (order == 0) return z > T(0) ? z : z * alpha;
            if (order == 1) return z > T(0) ? one : alpha;
            return T(0);
        case kTanh: {
            const T t = tanh(z);
            if (order == 0) return t;
            return order == 1 ? one - t * t : T(-2) * t * (one - t * t);
        }
        case kSigmoid: {
            const T s = one / (one + exp(-z));
            if (order == 0) return s;
            return order == 1 ? s * (one - s) : s * (one - s) * (one - T(2) * s);
        }
        case kElu:
            if (z > T(0)) return order == 0 ? z : (order == 1 ? one : T(0));
            return order == 0 ? expm1(z) : exp(z);
        case kSelu: {
            const T scale = T(kSeluScale), selu_alpha = T(kSeluAlpha);
            if (z > T(0)) return order == 0 ? scale * z : (order == 1 ? scale : T(0));
            return order == 0 ? scale * selu_alpha * expm1(z) : scale * selu_alpha * exp(z);
        }
        case kSoftplus: {
            if (z > T(kSoftplusThreshold)) return order == 0 ? z : (order == 1 ? one : T(0));
            const T s = one / (one + exp(-z));
            if (order == 0) return log1p(exp(z));
            return order == 1 ? s : s * (one - s);
        }
        case kSwish: {
            const T s = one / (one + exp(-z));
            if (order == 0) return z * s;
            if (order == 1) return s + z * s * (one - s);
            return s * (one - s) * (T(2) + z * (one - T(2) * s));
        }
        default:  // kLinear
            return order == 0 ? z : (order == 1 ? one : T(0));
    }
}

template <typename scalar_t>
__global__ void bias_act_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                const scalar_t* __restrict__ b, const scalar_t* __restrict__ dy,
                                int64_t numel, int64_t inner, int64_t channels, int order,
                                int act, double alpha, double gain, double clamp) {
    using T = at::opmath_type<scalar_t>;
    const int64_t stride = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
        T z = T(x[i]);
        if (b != nullptr) z += T(b[(i / inner) % channels]);
        const T value = activation<T>(act, 0, z, T(alpha)) * T(gain);
        if (order == 0) {
            out[i] = scalar_t(clamp >= 0 ? min(max(value, T(-clamp)), T(clamp)) : value);
            continue;
        }
        // Where the clamp cut the value, its gradient is 0, as in torch.clamp's backward.
        const bool inside = clamp < 0 || (value >= T(-clamp) && value <= T(clamp));
        const T slope = activation<T>(act, order, z, T(alpha)) * T(gain);
        out[i] = scalar_t(inside ? T(dy[i]) * slope : T(0));
    }
}

}  // namespace

at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy,
                         int64_t order, int64_t act, double alpha, double gain, double clamp,
                         int64_t dim) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous(), "bias_act_cuda: x must be a contiguous CUDA tensor");
    TORCH_CHECK(order >= 0 && order <= 2, "bias_act_cuda: order must be 0, 1 or 2, got ", order);
    TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act_cuda: unknown activation code ", act);
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act_cuda: dim ", dim, " is out of range");
    const bool has_bias = b.numel() > 0;
    if (has_bias) {
        TORCH_CHECK(b.is_cuda() && b.is_contiguous() && b.dim() == 1 && b.size(0) == x.size(dim)
                        && b.scalar_type() == x.scalar_type(),
                    "bias_act_cuda: b must be a contiguous 1-D CUDA tensor of x's dtype and size x.size(dim)");
    }
    if (order > 0) {
        TORCH_CHECK(dy.is_cuda() && dy.is_contiguous() && dy.sizes() == x.sizes()
                        && dy.scalar_type() == x.scalar_type(),
                    "bias_act_cuda: dy must be a contiguous CUDA tensor of x's shape and dtype");
    }

    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty_like(x);
    const int64_t numel = x.numel();
    if (numel == 0) return out;
    int64_t inner = 1;
    for (int64_t i = dim + 1; i < x.dim(); ++i) inner *= x.size(i);
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((numel + threads - 1) / threads, 65535);
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
        bias_act_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
            out.data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
            has_bias ? b.const_data_ptr<scalar_t>() : nullptr,
            order > 0 ? dy.const_data_ptr<scalar_t>() : nullptr, numel, inner, x.size(dim),
            int(order), int(act), alpha, gain, clamp);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}
