"""Storage: the only code that talks to S3/DynamoDB/EventBridge/Firehose and names S3 keys."""
