"""Stages: one module per Lambda function, named like it: event in, domain calls, store calls, events out."""
