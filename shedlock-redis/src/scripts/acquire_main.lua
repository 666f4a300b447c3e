return acquire()
