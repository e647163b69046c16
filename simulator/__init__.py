"""The simulator: a seeded fleet of virtual meters, load profiles, faults and an MQTT publisher.

    from simulator.fleet import make_fleet
    from simulator.run import simulate
"""
