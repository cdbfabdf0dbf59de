// Host stand-in for CUDA's cuda_fp16.h, for the emulated kernels (kernels/emu/emu.h): the
// storage type and the two conversions the kernels use, through the compiler's _Float16
// (IEEE binary16, conversions rounded to nearest even, as on the GPU).
#pragma once

#include <stdint.h>
#include <string.h>

struct __half {
    uint16_t bits;
};

inline float __half2float(__half h) {
    _Float16 f;
    memcpy(&f, &h.bits, sizeof f);
    return (float)f;
}

inline __half __float2half_rn(float x) {
    const _Float16 f = (_Float16)x;
    __half h;
    memcpy(&h.bits, &f, sizeof f);
    return h;
}
