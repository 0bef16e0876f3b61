"""Random container IDs and docker-style generated names."""

import os
import random
import re

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = (
    "admiring adoring affectionate amazing awesome blissful bold brave busy charming clever compassionate "
    "competent confident cool dazzling determined eager ecstatic elastic elated elegant epic exciting "
    "fervent festive flamboyant focused friendly frosty funny gallant gifted goofy gracious great happy "
    "hopeful hungry inspiring intelligent jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pensive "
    "practical priceless quirky quizzical relaxed reverent romantic sad serene sharp silly sleepy "
    "stoic strange suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant vigorous "
    "wizardly wonderful xenodochial youthful zealous zen"
).split()
_RIGHT = (
    "agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach bardeen "
    "bartik bassi beaver bell bhabha bhaskara blackwell bohr booth borg bose boyd brahmagupta brattain "
    "brown carson cerf chandrasekhar chaplygin chatelet chatterjee clarke colden cori cray curie "
    "darwin davinci dewdney dhawan diffie dijkstra dirac driscoll dubinsky easley edison einstein "
    "elbakyan elgamal elion ellis engelbart euclid euler faraday feistel fermat fermi feynman franklin "
    "galileo gauss goldberg goldstine goodall hamilton hawking heisenberg hermann hertz hodgkin hofstadter "
    "hopper hugle hypatia jackson jang jennings jepsen johnson joliot jones kalam kapitsa keldysh "
    "keller kepler khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt lederberg "
    "lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell mayer mccarthy "
    "mcclintock mclean mcnulty meitner mendel mendeleev merkle mestorf mirzakhani montalcini moore "
    "morse murdock napier nash neumann newton nightingale nobel noether northcutt noyce panini pare "
    "pascal pasteur payne perlman pike poincare poitras proskuriakova ptolemy raman ramanujan rhodes "
    "ride ritchie robinson roentgen rosalind rubin saha sammet sanderson satoshi shamir shannon shaw "
    "shirley shockley sinoussi snyder solomon spence stonebraker sutherland swanson swartz swirles "
    "taussig tesla tharp thompson torvalds tu turing varahamihira vaughan visvesvaraya volhard "
    "wescoff wilbur wiles williams williamson wilson wing wozniak wright wu yalow yonath zhukovsky"
).split()


def new_id() -> str:
    return os.urandom(32).hex()


def generate_name() -> str:
    return f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))
