"""The smallest Powertools handler: a Logger, and hello."""

from aws_lambda_powertools import Logger

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event, context):
    return {"statusCode": 200, "body": '{"message": "hello world"}'}
