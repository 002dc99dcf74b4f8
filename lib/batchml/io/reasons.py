"""Reject reasons, shared by the readers and the generators that plant broken lines on purpose."""

WRONG_FIELD_COUNT = "wrong field count"
BAD_USER_ID = "bad user id"
BAD_ITEM_ID = "bad item id"
BAD_RATING = "bad rating"
RATING_OUT_OF_RANGE = "rating out of range"
BAD_DATE = "bad date"
BEFORE_HEADER = "rating line before any movie header"
BAD_HEADER = "bad movie header"
UNDER_BAD_HEADER = "rating line under a bad movie header"
UNKNOWN_USER = "user not in ratings"
UNKNOWN_ITEM = "item not in ratings"
BAD_TITLE_LINE = "bad title line"

NETFLIX_REASONS = (WRONG_FIELD_COUNT, BAD_USER_ID, BAD_RATING, RATING_OUT_OF_RANGE, BAD_DATE,
                   BEFORE_HEADER, BAD_HEADER, UNDER_BAD_HEADER)
NOT_JSON = "not JSON"
MISSING_FIELD = "missing key field"
BAD_VOTES = "bad vote count"
BAD_VERIFIED = "bad verified flag"

NETFLIX_CSV_REASONS = (WRONG_FIELD_COUNT, BAD_USER_ID, BAD_ITEM_ID, BAD_RATING, RATING_OUT_OF_RANGE)
MOVIELENS_REASONS = (WRONG_FIELD_COUNT, BAD_USER_ID, BAD_ITEM_ID, BAD_RATING, RATING_OUT_OF_RANGE, BAD_DATE)
AMAZON_TSV_REASONS = (WRONG_FIELD_COUNT, BAD_USER_ID, BAD_ITEM_ID, BAD_RATING, RATING_OUT_OF_RANGE,
                      BAD_VOTES, BAD_VERIFIED, BAD_DATE)
AMAZON_JSON_REASONS = (NOT_JSON, MISSING_FIELD, BAD_RATING, RATING_OUT_OF_RANGE, BAD_DATE)
