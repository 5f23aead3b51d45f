"""Model registry and promotion gate: register, gate, promote, roll back, audit.

Modules: `store` (the client, names, the lock), `register`, `gate` (the condition language),
`scoring` and `evaluation` (the gate at work), `promote` (compare-and-set on `@champion`),
`audit` (the events), `catalog` (listings), `jobs` (a job's decisions). Nothing here imports
IPython or click; mlflow and scikit-learn are imported inside the functions that use them.
"""
