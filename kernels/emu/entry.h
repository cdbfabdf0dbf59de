// Entry points of the emulated kernels: a name, the kinds and sizes of the parameters, and a
// function that calls the kernel with its arguments unpacked from an array of pointers to their
// values (cuLaunchKernel's convention).
#pragma once

#include <stddef.h>

#include <type_traits>
#include <utility>

namespace ent_emu {

// One parameter: 'p' pointer, 'i' integer or 'f' floating point, and its size in bytes.
struct Param {
    char kind;
    unsigned char size;
};

template <typename T>
constexpr Param param_of() {
    return Param{std::is_pointer<T>::value          ? 'p'
                 : std::is_floating_point<T>::value ? 'f'
                                                    : 'i',
                 (unsigned char)sizeof(T)};
}

struct EntryPoint {
    const char* name;
    void (*run)(void** args);
    const Param* params;
    size_t arity;
};

template <typename F>
struct Thunk;

template <typename... A>
struct Thunk<void(A...)> {
    static constexpr size_t arity = sizeof...(A);
    static constexpr Param params[arity] = {param_of<A>()...};

    template <void (*F)(A...), size_t... I>
    static void call_with(void** args, std::index_sequence<I...>) {
        F(*static_cast<std::remove_cv_t<A>*>(args[I])...);
    }
    template <void (*F)(A...)>
    static void call(void** args) {
        call_with<F>(args, std::index_sequence_for<A...>{});
    }
};

}  // namespace ent_emu

// The table of kernels.cpp.
extern "C" const ent_emu::EntryPoint ent_emu_entries[];
extern "C" const size_t ent_emu_entry_count;

#define ENT_EMU_ENTRY(fn)                                                          \
    ent_emu::EntryPoint {                                                          \
        #fn, &ent_emu::Thunk<decltype(fn)>::call<fn>, ent_emu::Thunk<decltype(fn)>::params, \
            ent_emu::Thunk<decltype(fn)>::arity                                    \
    }
