"""Domain: pure logic (no boto3, botocore, TensorFlow): specs, validation, statistics, decisions, formats."""
