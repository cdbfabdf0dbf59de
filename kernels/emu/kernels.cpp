// The kernels' own sources, compiled for the host on top of emu.h, and the table of their
// entry points. Every `extern "C" __global__` function of kernels/*.cu is listed here; `cargo
// xtask kernels --check` compares this list with the entry points in the compiled PTX.

#include "emu.h"
#include "entry.h"

#include "../lstm.cu"
#include "../pool.cu"
#include "../rnnt.cu"

extern "C" const ent_emu::EntryPoint ent_emu_entries[] = {
    ENT_EMU_ENTRY(rnnt_normalize_f32),
    ENT_EMU_ENTRY(rnnt_normalize_f64),
    ENT_EMU_ENTRY(rnnt_normalize_f16),
    ENT_EMU_ENTRY(rnnt_normalize_bf16),
    ENT_EMU_ENTRY(rnnt_alpha_beta),
    ENT_EMU_ENTRY(rnnt_costs),
    ENT_EMU_ENTRY(rnnt_grad_f32),
    ENT_EMU_ENTRY(rnnt_grad_f64),
    ENT_EMU_ENTRY(rnnt_grad_f16),
    ENT_EMU_ENTRY(rnnt_grad_bf16),
    ENT_EMU_ENTRY(pool_f32),
    ENT_EMU_ENTRY(pool_f64),
    ENT_EMU_ENTRY(pool_f16),
    ENT_EMU_ENTRY(pool_bf16),
    ENT_EMU_ENTRY(lstm_forward_f32),
    ENT_EMU_ENTRY(lstm_forward_f64),
    ENT_EMU_ENTRY(lstm_backward_f32),
    ENT_EMU_ENTRY(lstm_backward_f64),
};

extern "C" const size_t ent_emu_entry_count = sizeof(ent_emu_entries) / sizeof(ent_emu_entries[0]);
