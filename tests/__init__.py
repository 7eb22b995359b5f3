"""The course's tests; ``tests.support`` holds what several test modules share."""
