// btnsctl: the operator's command line tool (see README.md here).
#include <iostream>
#include <string>
#include <vector>

#include "tools/btnsctl/cli.h"

int main(int argc, char** argv) {
  return btnsctl::Run(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                      std::cerr);
}
