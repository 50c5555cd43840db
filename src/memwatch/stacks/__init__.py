"""Where the memory goes: allocation call stacks of chosen processes.

The kernel copies the user registers and a window of the user stack with each call of a stack
target; :mod:`memwatch.stacks.unwind` unwinds it with the modules' .eh_frame
(:mod:`memwatch.stacks.cfi`, :mod:`memwatch.stacks.elf`), and :mod:`memwatch.stacks.table` keeps,
per call stack, its calls, bytes and the bytes still mapped. Plain Python over bytes: no ctypes.
"""
