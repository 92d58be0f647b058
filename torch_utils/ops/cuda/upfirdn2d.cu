// CUDA kernel of upfirdn2d: one thread per output pixel sums the filter taps that land on
// nonzero samples of the upsampled, padded input, so no intermediate image is stored. It
// handles any filter size, up/down factor and padding; backward is the same kernel with
// transposed parameters (see upfirdn2d.py).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dmd_ops.h"

namespace {

struct Upfirdn2dParams {
    int64_t channels, in_h, in_w, out_h, out_w;
    int filter_h, filter_w;
    int upx, upy, downx, downy, padx0, pady0;
};

// First tap index k >= 0 for which (base + k) is a multiple of `up`, so that the tap lands
// on an input sample rather than on an inserted zero.
__device__ __forceinline__ int first_tap(int64_t base, int up) {
    const int64_t rem = base % up;
    return int(rem == 0 ? 0 : (rem < 0 ? -rem : up - rem));
}

template <typename scalar_t, typename filter_t>
__global__ void upfirdn2d_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                 const filter_t* __restrict__ f, Upfirdn2dParams p,
                                 int64_t numel, double gain) {
    using T = at::opmath_type<scalar_t>;
    const int64_t stride = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
        const int64_t ox = i % p.out_w;
        const int64_t oy = (i / p.out_w) % p.out_h;
        const int64_t plane = i / (p.out_w * p.out_h);  // n * channels + c
        const scalar_t* image = x + plane * p.in_h * p.in_w;

        // Output (oy, ox) correlates the taps with the padded, upsampled image starting at
        // (oy * downy, ox * downx). Upsampled position u contains input sample u / up when u is
        // a multiple of up, and padded position q is upsampled position q - pad0.
        const int64_t base_y = oy * p.downy - p.pady0;
        const int64_t base_x = ox * p.downx - p.padx0;
        T sum = T(0);
        for (int ky = first_tap(base_y, p.upy); ky < p.filter_h; ky += p.upy) {
            const int64_t iy = (base_y + ky) / p.upy;
            if (iy < 0 || iy >= p.in_h) continue;
            for (int kx = first_tap(base_x, p.upx); kx < p.filter_w; kx += p.upx) {
                const int64_t ix = (base_x + kx) / p.upx;
                if (ix < 0 || ix >= p.in_w) continue;
                sum += T(f[ky * p.filter_w + kx]) * T(image[iy * p.in_w + ix]);
            }
        }
        out[i] = scalar_t(sum * T(gain));
    }
}

}  // namespace

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                          int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                          int64_t pady0, int64_t pady1, double gain) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous() && x.dim() == 4,
                "upfirdn2d_cuda: x must be a contiguous 4-D CUDA tensor [N, C, H, W]");
    const auto filter_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    TORCH_CHECK(f.is_cuda() && f.is_contiguous() && f.dim() == 2 && f.scalar_type() == filter_type,
                "upfirdn2d_cuda: f must be a contiguous 2-D CUDA tensor, float64 for float64 "
                "images and float32 otherwise");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1,
                "upfirdn2d_cuda: up and down factors must be >= 1");

    Upfirdn2dParams p;
    p.channels = x.size(1);
    p.in_h = x.size(2);
    p.in_w = x.size(3);
    p.filter_h = int(f.size(0));
    p.filter_w = int(f.size(1));
    p.upx = int(upx), p.upy = int(upy), p.downx = int(downx), p.downy = int(downy);
    p.padx0 = int(padx0), p.pady0 = int(pady0);
    p.out_h = (p.in_h * upy + pady0 + pady1 - p.filter_h) / downy + 1;
    p.out_w = (p.in_w * upx + padx0 + padx1 - p.filter_w) / downx + 1;
    TORCH_CHECK(p.out_h >= 1 && p.out_w >= 1,
                "upfirdn2d_cuda: the padded input is smaller than the filter");

    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty({x.size(0), p.channels, p.out_h, p.out_w}, x.options());
    const int64_t numel = out.numel();
    if (numel == 0) return out;
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((numel + threads - 1) / threads, 65535);
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
        using filter_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
        upfirdn2d_kernel<scalar_t, filter_t><<<blocks, threads, 0, stream>>>(
            out.data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
            f.const_data_ptr<filter_t>(), p, numel, gain);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}
