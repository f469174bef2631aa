"""The steps of a call, one module each, in the order console.gateway.pipeline runs them.

Each step is `async def step(call: Call) -> None`: it reads the call state, does its
one job, and writes what it found back onto the call (or raises the ApiError that
refuses the call). A step never calls back into the pipeline and knows no wire format.
"""
