// Anchors the exception hierarchy's vtables in one translation unit.
#include "longlive/error.h"
