#ifndef DIFFUSIONRL_CZLIB_SHIM_H
#define DIFFUSIONRL_CZLIB_SHIM_H
#include <zlib.h>
#endif
