// TELEREAD_ASAN is 1 in an AddressSanitizer build: GCC says so with __SANITIZE_ADDRESS__, clang 14
// only through __has_feature.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define TELEREAD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TELEREAD_ASAN 1
#endif
#endif
#ifndef TELEREAD_ASAN
#define TELEREAD_ASAN 0
#endif
