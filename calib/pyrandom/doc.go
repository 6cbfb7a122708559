// Package pyrandom is a bit-exact port of the parts of CPython's random
// module that the reference calibration sampler (locuslab/wanda lib/data.py)
// relies on: the MT19937 generator, seeding from an integer, getrandbits,
// randint (via _randbelow with getrandbits rejection sampling) and random().
//
// Data layout: the generator state is the standard 624-word MT19937 state
// array plus an index. Integers wider than 32 bits are assembled from
// successive 32-bit outputs, least significant word first, exactly as
// CPython's getrandbits does.
package pyrandom
