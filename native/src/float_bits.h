/* A float's IEEE bits and back, for the library and its C tests alike (memcpy: no aliasing
 * questions, and compilers turn it into a register move). */
#ifndef QT_FLOAT_BITS_H
#define QT_FLOAT_BITS_H

#include <stdint.h>
#include <string.h>

static inline uint32_t qt_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float qt_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif /* QT_FLOAT_BITS_H */
