"""What an event is: the event model and its validation, money, prices, tenant names, and batch
preparation (with the optional C loops).
"""
