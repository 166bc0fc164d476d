"""The model's pieces: parameters, income, the household problem, the stationary
distribution, markets (aggregation and excess demands) and the household-block Jacobians.

The core knows nothing of solvers: every function here maps arrays to arrays (JAX, float64).
"""
