-- luatos-sim stand-in for sysplus: on current firmware it is sys itself.
return require "sys"
