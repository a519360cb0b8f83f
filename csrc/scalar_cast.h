// to_scalar<scalar_t>(acc): an accumulator value stored in a kernel's element type. For
// bfloat16 it rounds to nearest even as c10::BFloat16(float) does, NaN to the quiet NaN,
// but written as selects: c10's branch on NaN stops GCC vectorising the loop around it
// (a bfloat16 store loop ran about 7x slower). Internal linkage, so that each instruction
// set's copy of the CPU kernels (cpu_isa.h) keeps its own.
#pragma once

#include <c10/util/BFloat16.h>

#include <bit>
#include <cstdint>
#include <type_traits>

namespace pyface {
namespace {

template <typename scalar_t, typename acc_t>
inline scalar_t to_scalar(acc_t value) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    const float v = float(value);
    const uint32_t bits = std::bit_cast<uint32_t>(v);
    const auto rounded = static_cast<uint16_t>((bits + UINT32_C(0x7FFF) + ((bits >> 16) & 1)) >> 16);
    return c10::BFloat16(v != v ? uint16_t(0x7FC0) : rounded, c10::BFloat16::from_bits());
  } else {
    return scalar_t(value);
  }
}

}  // namespace
}  // namespace pyface
