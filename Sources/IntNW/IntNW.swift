// IntNW module
