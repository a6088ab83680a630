print("intnw-lab")
