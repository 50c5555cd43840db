"""Where the memory goes: allocation call stacks of chosen processes.

The kernel copies the user registers and a window of the user stack with each call of a stack
target; :mod:`memwatch.stacks.unwind` unwinds it with the modules' .eh_frame
(:mod:`memwatch.stacks.cfi`, :mod:`memwatch.stacks.elf`), and :mod:`memwatch.stacks.table` keeps,
per call stack, its calls, bytes and the bytes still mapped. Plain Python over bytes: no ctypes.

The ELF and CFI readers are our own rather than pyelftools because they look up only the entries
an address needs (through .eh_frame_hdr's binary search table) where pyelftools parses a whole
.eh_frame first: libc's 3,717 entries took pyelftools 0.33 376 ms (and 216 ms more to decode, one
entry refused), against 3-6 ms here for opening libc and naming and unwinding 200 of its
addresses (bench/bench_stacks.py), about 0.01x.
"""
